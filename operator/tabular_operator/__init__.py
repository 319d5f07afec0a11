"""aumos-tabular-engine operator (Kopf). The lifecycle handlers arrive with their issue."""
