"""Alert rules, routing, lifecycle and notifiers (see docs/alerting.md).

- ``config``: :class:`AlertingConfig` (rules, routes, timings, retries, secrets)
- ``routing``, ``lifecycle``: pure decisions (who gets an alert; notify or not)
- ``shared``: silences and lifecycle shared by notifier replicas on compacted Kafka topics
- ``store``: the local sqlite cache (their mirror, the delivery journal, Slack message ids)
- ``messages``: message text, Slack blocks, PagerDuty events
- ``slack``, ``pagerduty``, ``desktop``, ``log_notifier``: receivers; ``retry``: backoff and Retry-After
- ``dispatch``: one batch end to end; ``agent``: the Faust notifier; ``cli``: ``silence`` and ``alerts``
"""
