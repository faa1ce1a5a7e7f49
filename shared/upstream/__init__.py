"""The AlphaVantage wing: errors, the payload parser, the HTTP client, the fleet's rate limiter,
and the factory that builds them from the settings. Imports no domain module (import-linter)."""
