"""What identity reacts to: nothing. It publishes no events and consumes none; tokens are its only output."""

SUBSCRIPTIONS = None
