// JavaScript: tells the warehouse (a log line here) that the order can ship.
export const config = {
  name: "Notify warehouse",
  subscribes: ["receipt.sent"],
  input: {
    type: "object",
    properties: { order_id: { type: "string" }, risky: { type: "boolean" } },
    required: ["order_id", "risky"],
  },
  emits: [],
  flows: ["checkout"],
};

export async function handler(input, ctx) {
  ctx.logger.info(input.risky ? "hold for review" : "ship it", { order_id: input.order_id });
}
