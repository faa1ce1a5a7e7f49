"""A sandbox AlphaVantage server: TIME_SERIES_DAILY, its errors, limits and faults, offline.

``GET /query`` answers like https://www.alphavantage.co/query for ``function=TIME_SERIES_DAILY``
(``symbol``, ``outputsize=compact|full``, ``datatype=json|csv``, ``apikey``): JSON or CSV
(``application/x-download``, CRLF) bodies, newest first, trading days only, prices as 4-decimal
strings. Histories are synthetic but deterministic per symbol (see ``data``), start 1999-11-01 and
end at the last completed trading day of the sandbox's clock (``SandboxConfig.today`` pins it).

Errors use AlphaVantage's own wording and always arrive as JSON with HTTP 200. Checks, in order:

1. a scripted outcome for this call (``POST /_sandbox/faults``), then ``config.fault``; two
   outcomes exist only this way: ``bad_number`` (the normal body with ``"N/A"`` as the newest
   row's open price) and ``slow_body`` (the normal body trickled over ``slow_seconds``, so no
   single read waits long);
2. fault symbols: ``ERR500`` (HTTP 500 page), ``ERR503`` (HTTP 503 page), ``TRUNC`` (the normal
   body cut in half), ``HTML`` (HTML page with status 200), ``HTML502`` (HTML page, 502),
   ``EMPTY`` (``{}``); ``SLOW`` answers normally after ``slow_seconds``;
3. missing, empty or rejected apikey -> ``Error Message`` (apikey invalid or missing);
4. ``TIME_SERIES_DAILY_ADJUSTED`` -> premium endpoint ``Information`` (even when ``premium``,
   since the sandbox serves only TIME_SERIES_DAILY); any other function -> ``This API function
   (X) does not exist.``;
5. apikey ``demo`` with a symbol other than IBM -> demo ``Information``;
6. a symbol that is missing, not ticker-shaped or in ``invalid_symbols`` -> ``Invalid API call``;
7. ``outputsize=full`` unless ``premium`` -> premium outputsize ``Information``;
8. limits: a call that would exceed a window gets the burst message (window under a minute), the
   premium@alphavantage.co message (minute/hour windows) or the daily message (a day or longer;
   with ``echo_key_in_daily_limit`` the newer wording that echoes the key).

Limits count only calls answered with data, per apikey, in exact sliding windows; every call is
recorded in ``GET /_sandbox/stats`` (never with its apikey). Unknown parameters are ignored and
parameter values are case-insensitive; an unrecognised outputsize means compact and an
unrecognised datatype means JSON (AlphaVantage was seen doing the former).

Control: ``GET /_sandbox/stats``, ``POST /_sandbox/reset`` (calls, counters, scripted faults),
``GET|PUT /_sandbox/config`` (partial updates of ``SandboxConfig``), ``GET|POST /_sandbox/faults``
(``{"symbol": "IBM" | null, "outcomes": ["http_503", "ok", "slow", ...]}``, used in order;
symbol-specific steps go before steps for any symbol).

Run it with ``server.serve`` (blocking), ``python -m stockpile.sandbox --port N``, or in tests
with ``server.running_sandbox()``, which starts a child process on a free loopback port.
"""
