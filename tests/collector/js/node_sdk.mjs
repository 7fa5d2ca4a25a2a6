// Sends identify, track, page, screen, group and alias with Segment's own Node SDK
// (@segment/analytics-node) to the collector and prints the messageIds it sent as JSON.
//   COLLECTOR_URL=… WRITE_KEY=… USER_ID=… FLUSH_AT=15|1 node node_sdk.mjs
import { Analytics } from '@segment/analytics-node'

const { COLLECTOR_URL, WRITE_KEY, USER_ID, FLUSH_AT = '15' } = process.env
const analytics = new Analytics({
  writeKey: WRITE_KEY,
  host: COLLECTOR_URL,
  flushAt: Number(FLUSH_AT),
  flushInterval: 200,
  maxRetries: 5,
})
const sent = []
const failed = []
const done = (err, ctx) => {
  if (err) failed.push(String(err))
  else sent.push(ctx.event.messageId)
}
analytics.on('error', (err) => failed.push(String(err && err.reason || err)))

const userId = USER_ID
// one second apart, in the order the test expects them back from the Profile API
const at = (i) => new Date(Date.now() - (6 - i) * 1000)
analytics.identify(
  { userId, traits: { email: `${userId}@example.com`, plan: 'node' }, timestamp: at(0) },
  done
)
analytics.track(
  { userId, event: 'Order Completed', properties: { revenue: 19.5 }, timestamp: at(1) },
  done
)
analytics.page(
  { userId, category: 'Docs', name: 'Pricing', properties: { section: 'plans' }, timestamp: at(2) },
  done
)
analytics.screen({ userId, name: 'Home', properties: { tab: 'feed' }, timestamp: at(3) }, done)
analytics.group(
  { userId, groupId: 'acct-node', traits: { name: 'Node Inc' }, timestamp: at(4) },
  done
)
analytics.alias({ userId, previousId: `${userId}-anon`, timestamp: at(5) }, done)
await analytics.closeAndFlush({ timeout: 30000 })
console.log(JSON.stringify({ sent, failed }))
