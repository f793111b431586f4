"""Everything that talks to the cloud: roster pull and sync rules, schedule, attendance outbox."""
