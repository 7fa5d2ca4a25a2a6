// What the test page gets: Segment's own browser SDK, as a web page would install it.
import { AnalyticsBrowser } from '@segment/analytics-next'

window.AnalyticsBrowser = AnalyticsBrowser
