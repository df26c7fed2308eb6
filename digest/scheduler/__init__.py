"""Schedules: pure cron math (`cron`) and the APScheduler daemon (`daemon`)."""
