"""The courier delivers the parcel: an outside service, drawn in the graph only."""

config = {
    "type": "noop",
    "name": "Courier",
    "description": "An outside delivery service",
    "virtual_subscribes": ["order.shipped"],
    "flows": ["fulfillment"],
}
