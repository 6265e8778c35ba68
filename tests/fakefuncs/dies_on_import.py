"""A handler module whose import kills its process, as a crashing native extension would."""

import os

os._exit(3)
