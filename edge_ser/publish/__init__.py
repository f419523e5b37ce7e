"""Where results go: stdout JSON lines, MQTT, the live page (http), or memory; fanout.py hands each
message to all of them."""
