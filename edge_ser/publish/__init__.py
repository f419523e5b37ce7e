"""Where results go: stdout JSON lines, MQTT."""
