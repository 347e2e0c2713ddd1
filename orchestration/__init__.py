"""Lab Task 4: Cloud Composer runs the batch migration on each visit file landed in Cloud
Storage and announces it on Pub/Sub (see docs/orchestration.md)."""
