"""Alert rules, routing, lifecycle and notifiers."""
