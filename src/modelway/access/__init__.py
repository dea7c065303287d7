"""Who is calling and what they may do: virtual keys, teams, roles, and their admin."""
