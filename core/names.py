"""Names that several layers write or read: the policy decides them, the executor and ledger record them."""

FORCED_RULE = "forced"  # the rule name recorded when a caller names the tier itself
SESSION_PIN_RULE = "session_pin"  # the rule name recorded when a conversation keeps the tier it reached
PASSTHROUGH = "passthrough"  # the tier and rule name recorded for pass-through requests
ROUTER_MODELS = ("router", "auto")  # model names that ask the proxy to classify and decide
