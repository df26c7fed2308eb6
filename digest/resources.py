"""Where bundled files live: templates (top-level `templates/`), overridable by env."""

from __future__ import annotations

import os
from pathlib import Path

# The project keeps templates at the top level (the design card); an editable install
# (`pip install -e .`) resolves them beside the package. DIGEST_TEMPLATES overrides.
TEMPLATES = Path(os.environ.get("DIGEST_TEMPLATES") or Path(__file__).resolve().parent.parent / "templates")
WEB_TEMPLATES = TEMPLATES / "web"
EMAIL_TEMPLATES = TEMPLATES / "email"
