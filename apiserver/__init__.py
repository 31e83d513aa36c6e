"""A ClearML-style API server: declarative HOCON endpoints over Flask and MongoDB."""

__version__ = "0.1.0"

# The newest API version this server speaks (server.info reports it; auth.login puts it in the
# token, and the ClearML SDK picks its URL version from that claim). No endpoint may declare a
# newer one: the spec loader refuses it.
MAX_API_VERSION = "2.23"
