"""A person reviews declined payments and may place the order again. Never run: drawn only."""

config = {
    "type": "noop",
    "name": "Fraud review",
    "description": "A person reviews the declined payment",
    "virtual_subscribes": ["payment.declined"],
    "virtual_emits": [{"topic": "order.placed", "label": "approved"}],
    "flows": ["checkout"],
}
