"""Delivery stage: the one send loop (batches, rate, retries, ledger) and the provider adapters."""
