"""What journeys and broadcasts share on the way to `engage.messages`: template variables."""
