// Opens the test page in headless Chromium (the system's, via puppeteer-core: no browser is
// downloaded) and prints what the page reports as one JSON line, with every request the
// page made to the collector and its status.
//   node run_browser.mjs <chromium path> <page URL>
import puppeteer from 'puppeteer-core'

const [executablePath, url] = process.argv.slice(2)
const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
})
const requests = []
try {
  const page = await browser.newPage()
  page.on('response', (res) => {
    requests.push({ method: res.request().method(), url: res.url(), status: res.status() })
  })
  const logs = []
  page.on('console', (msg) => logs.push(msg.text()))
  await page.goto(url)
  await page.waitForFunction(() => window.__result !== null, { timeout: 30000 })
  const result = await page.evaluate(() => window.__result)
  await page.waitForNetworkIdle({ idleTime: 500, timeout: 15000 })
  console.log(JSON.stringify({ ...result, requests, logs }))
} finally {
  await browser.close()
}
