"""Services the vendor packages use: object storage, vendor clients, token cache, rate limits, budgets."""
