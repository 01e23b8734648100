"""Messages stage: compiled email + Subscriber -> Message (personalised, headers, unsubscribe)."""
