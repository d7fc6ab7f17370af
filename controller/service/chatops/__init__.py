"""ChatOps: each pending approval as a Slack interactive message, and the endpoint its buttons call.

- `config`: the webhook, the signing secret (from a file or an environment variable, never logged) and the map
  of chat users to identities (`<state dir>/chatops.yaml`)
- `blocks`: the Block Kit message, every outside value escaped for mrkdwn
- `signature`: Slack's request signature (HMAC-SHA256, 5-minute window, replays refused)
- `poster`: the service's loop that posts each pending approval once, recorded in `<state dir>/chatops-posted.json`
- `routes`: `POST /v1/chat/slack/interactions`, voting through `controller.service.approvals` as the inbox does
"""

from autonomy_controller.controller.service.chatops.config import ChatConfig, ChatConfigError, load_chat_config

__all__ = ["ChatConfig", "ChatConfigError", "load_chat_config"]
