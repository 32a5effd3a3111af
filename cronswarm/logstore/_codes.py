"""The MongoDB server error codes the log store acts on."""

DUPLICATE_KEY = 11000
INDEX_NOT_FOUND = 27
UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18
