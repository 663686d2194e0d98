"""The vzkeep CrossGuard policy pack (policies live in `backup_policies`)."""
