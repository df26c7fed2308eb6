"""Where bundled files live: templates (top-level `templates/`), overridable by env."""

from __future__ import annotations

import os
from pathlib import Path

# The project keeps templates at the top level (the design card); `digest/templates` is a
# symlink to them, so a checkout or editable install reads them in place and `pip install .`
# packages them (package-data in pyproject.toml). DIGEST_TEMPLATES overrides.
TEMPLATES = Path(os.environ.get("DIGEST_TEMPLATES") or Path(__file__).resolve().parent / "templates")
WEB_TEMPLATES = TEMPLATES / "web"
EMAIL_TEMPLATES = TEMPLATES / "email"
