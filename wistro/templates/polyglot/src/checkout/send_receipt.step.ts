// TypeScript: sends the receipt once the payment is scored.
interface FraudScored {
  order_id: string;
  score: number;
}

export const config = {
  name: "Send receipt",
  subscribes: ["fraud.scored"],
  input: {
    type: "object",
    properties: { order_id: { type: "string" }, score: { type: "number" } },
    required: ["order_id", "score"],
  },
  emits: ["receipt.sent"],
  flows: ["checkout"],
};

export async function handler(input: FraudScored, ctx: any): Promise<void> {
  const amount: number = await ctx.state.get(ctx.traceId, "amount_cents");
  ctx.logger.info("receipt", { order_id: input.order_id, total: amount / 100 });
  await ctx.emit("receipt.sent", { order_id: input.order_id, risky: input.score > 0.5 });
}
