"""X: the tweepy adapter of the platform port (`api`), its wiring from settings (`wiring`)
and the loopback X API the demo and the tests run against (`sandbox`)."""
