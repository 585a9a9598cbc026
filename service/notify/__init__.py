"""``hedgewatch notify``: delivers the durable alert stream to Slack and Telegram."""

from hedgewatch.service.notify.app import main, run_notifier, silence_add, silence_list, silence_remove

__all__ = ["main", "run_notifier", "silence_add", "silence_list", "silence_remove"]
