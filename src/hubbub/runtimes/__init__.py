"""Lambda functions in their own processes, through the Lambda Runtime API (docs/runtimes.md).

``launch`` says which functions run this way and how each starts; ``protocol`` is the Runtime
API's wire contract; ``environment`` one runtime process and its endpoint; ``pool`` a function's
environments; ``integration`` the gateway's side (RuntimeIntegration, Runtimes).
"""
