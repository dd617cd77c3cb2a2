"""Names every module shares, written once: endpoint paths, the instance header, the
``app.extensions`` key."""

#: Where a node keeps its engine: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "clustershazbot"
#: The endpoints, relative to a node's base URL (the original's wire format).
PREFIX = "clustershazbot"
GOSSIP_PATH = PREFIX + "/gossip"
LIST_PATH = PREFIX + "/list"
CONTROL_PATH = PREFIX + "/control"
#: The indirect-probe extension (docs/protocol-notes.md); nodes of the original answer 404.
PROBE_PATH = PREFIX + "/probe"
#: Every answer of a node's endpoints carries its instance token (see Engine.instance).
INSTANCE_HEADER = "X-Clustershazbot-Instance"
