"""AlphaVantage's own wording for errors and soft errors, copied from recorded responses."""

INVALID_API_CALL = (
    "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for {function}."
)
FUNCTION_DOES_NOT_EXIST = "This API function ({function}) does not exist."
APIKEY_INVALID_OR_MISSING = (
    "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)
DEMO_KEY = (
    "The **demo** API key is for demo purposes only. Please claim your free API key at "
    "(https://www.alphavantage.co/support/#api-key) to explore our full API offerings. "
    "It takes fewer than 20 seconds, and we are committed to making it free forever."
)
PREMIUM_ENDPOINT = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of "
    "the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium "
    "endpoints"
)
PREMIUM_OUTPUTSIZE_FULL = (
    "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature "
    "for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to instantly unlock all premium features"
)
BURST_LIMIT = (
    "Thank you for using Alpha Vantage! Please consider spreading out your free API requests "
    "more sparingly (1 request per second). You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per day), "
    "raise the per-second burst limit, and instantly unlock all premium endpoints"
)
DAILY_LIMIT = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. "
    "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to "
    "instantly remove all daily rate limits."
)
DAILY_LIMIT_ECHOING_KEY = (
    "We have detected your API key as {apikey} and our standard API rate limit is 25 requests "
    "per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ "
    "to instantly remove all daily rate limits."
)
PLAN_LIMIT = (
    "Thank you for using Alpha Vantage! Please contact premium@alphavantage.co if you are "
    "targeting a higher API call volume."
)
# The 2018-2023 free-tier throttle, sent under "Note" rather than "Information".
LEGACY_NOTE_LIMIT = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and "
    "500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to "
    "target a higher API call frequency."
)
