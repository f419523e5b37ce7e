"""Home Assistant MQTT discovery: one `enum` sensor whose state is the emotion label.

Home Assistant reads a retained JSON config at
`<discovery_prefix>/sensor/<node_id>/<object_id>/config` (ids limited to [a-zA-Z0-9_-]) and creates
the entity; the state comes from the result topic through `value_template`, the attributes are the
probabilities through `json_attributes_template`, and availability follows our status topic (whose
Last Will is `offline`). Schema: https://www.home-assistant.io/integrations/sensor.mqtt/ and
https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
"""

from __future__ import annotations

import re
from typing import Any

from ..config import topic_setting
from ..labels import EMOTIONS, NEUTRAL
from ..settings import MqttSettings

OBJECT_ID = "emotion"
"""Object id of the sensor under our node id."""


def node_id(topic_prefix: str) -> str:
    """A discovery node id from the topic prefix (unique per daemon on a broker, or topics collide)."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", topic_prefix).strip("_") or "edge_ser"


def discovery_topic(discovery_prefix: str, topic_prefix: str) -> str:
    """Where the retained config of the emotion sensor goes."""
    prefix = topic_setting("mqtt.discovery_prefix", discovery_prefix)
    return f"{prefix}/sensor/{node_id(topic_prefix)}/{OBJECT_ID}/config"


def discovery(settings: MqttSettings, site: str, topic_prefix: str, state_topic: str,
              status_topic: str, version: str) -> tuple[str, dict[str, Any]]:
    """(topic, config) of the Home Assistant discovery message for the emotion sensor."""
    node = node_id(topic_prefix)
    config: dict[str, Any] = {
        "name": "Emotion",
        "unique_id": f"{node}_{OBJECT_ID}",
        "state_topic": state_topic,
        "value_template": "{{ value_json.label }}",
        "json_attributes_topic": state_topic,
        "json_attributes_template": "{{ value_json.probs | tojson }}",
        # enum: Home Assistant shows the label as text and knows every value it can take.
        "device_class": "enum",
        "options": [*EMOTIONS, NEUTRAL],
        "icon": "mdi:emoticon-outline",
        "qos": settings.qos,
        "availability_topic": status_topic,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [node],
            "name": f"edge-ser {site}",
            "manufacturer": "edge-ser",
            "model": "speech emotion recognition",
            "sw_version": version,
        },
        "origin": {"name": "edge-ser", "sw_version": version},
    }
    if settings.expire_after_s > 0:
        config["expire_after"] = settings.expire_after_s
    return discovery_topic(settings.discovery_prefix, topic_prefix), config
