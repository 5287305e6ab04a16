"""Adapters: SMTP and IMAP intake, mail and Slack delivery, the web server and the command line."""
