"""The staff Slack app: ticket cards and their threads, the buttons and modals that decide, and staff views."""
