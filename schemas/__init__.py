"""Wire schemas: every message jetexec publishes or consumes is a msgspec Struct defined here."""

from schemas.codec import DecodeError, decode, encode
from schemas.enums import *  # noqa: F401,F403
from schemas.messages import *  # noqa: F401,F403
from schemas.venue import *  # noqa: F401,F403

