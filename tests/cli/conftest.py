"""Fixtures of the servers the commands talk to, shared with the tests that build
them: the model repository's (`artifact`, `models_root`), the monitor's parts
(`monitor_parts`) and the insight service over a real channel (`models`, `running`)."""

from tests.engines.insight.test_monitor import monitor_parts  # noqa: F401 - pytest finds fixtures by name
from tests.models.conftest import artifact, models_root  # noqa: F401
from tests.services.test_insight_service import models, running  # noqa: F401
