// The hush web page as the scenarios see it: only through the DOM contract in the lead's notes
// (#conn, #chats li[data-chat], #messages li.msg with .text/.state/.from, #composer, dialogs).

import { until, check } from './harness.mjs';

/** `#chats li` of a contact (`bob`) or a group (`#team`). */
export function chat(page, name) {
  return page.locator(`#chats li[data-chat="${name}"]`);
}

/** Wait until the page says it is connected to hush web and, through it, to the relay. */
export async function connected(page, timeoutMs = 20_000) {
  await page.locator('#conn[data-state="connected"]').waitFor({ state: 'attached', timeout: timeoutMs });
}

export async function connState(page) {
  return page.locator('#conn').getAttribute('data-state');
}

/**
 * Open a conversation by clicking its `#chats` entry (or, with `keyboard`, focusing it and
 * pressing Enter); wait for its title.
 */
export async function openChat(page, name, { keyboard = false } = {}) {
  const entry = chat(page, name);
  await entry.waitFor({ state: 'visible' });
  if (keyboard) {
    await entry.focus();
    await page.keyboard.press('Enter');
  } else {
    await entry.click();
  }
  const bare = name.replace(/^#/, '');
  await until(
    async () => ((await page.locator('#conv-title').textContent()) ?? '').includes(bare),
    `#conv-title to name ${name}`,
  );
}

/**
 * The last `#messages li.msg` whose `.text` is exactly `text`, as plain data: its attributes,
 * `.state[data-state]` and `.from`; null when there is none.
 */
export async function message(page, text) {
  return page.evaluate((wanted) => {
    const all = [...document.querySelectorAll('#messages li.msg')].filter(
      (li) => li.querySelector('.text')?.textContent === wanted,
    );
    const li = all.at(-1);
    if (!li) return null;
    return {
      count: all.length,
      id: li.dataset.id ?? null,
      outgoing: li.dataset.outgoing ?? null,
      state: li.querySelector('.state')?.dataset.state ?? null,
      from: li.querySelector('.from')?.textContent.trim() ?? null,
    };
  }, text);
}

/** Wait for the message with exactly `text` to satisfy `accept` (default: to be shown). */
export async function waitMessage(page, text, what, accept = () => true, timeoutMs = 15_000) {
  let last = null;
  await until(
    async () => {
      last = await message(page, text);
      return last !== null && accept(last);
    },
    `${what} (#messages li.msg with .text ${JSON.stringify(text)})`,
    timeoutMs,
  ).catch((e) => {
    throw new Error(`${e.message}; message seen: ${JSON.stringify(last)}`);
  });
  return last;
}

/** Type into `#composer` and press Enter, as a user sending one line. */
export async function send(page, text) {
  const composer = page.locator('#composer');
  await composer.fill(text);
  await composer.press('Enter');
}

/** Whether `locator` is enabled (for a `disabled` composer or button). */
export async function enabled(locator) {
  return locator.isEnabled();
}

/** Open a dialog by its button and wait until it shows. */
export async function openDialog(page, button, dialog) {
  await page.locator(button).click();
  await page.locator(dialog).waitFor({ state: 'visible' });
}

/** Escape closes the dialog (keyboard contract). */
export async function escapeCloses(page, dialog) {
  await page.keyboard.press('Escape');
  await page.locator(dialog).waitFor({ state: 'hidden', timeout: 5_000 }).catch(() => {
    throw new Error(`Escape did not close ${dialog}`);
  });
}

/** The first-contentful-paint of the page's load, in ms from navigation start (or null). */
export async function firstContentfulPaint(page) {
  return page.evaluate(
    () => performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint')?.startTime ?? null,
  );
}

/** The token from the URL hush web printed (`http://127.0.0.1:PORT/#token=HEX`). */
export function tokenOf(url) {
  const token = new URL(url).hash.replace(/^#token=/, '');
  check(/^[0-9a-f]{64}$/.test(token), `URL line has no 64-hex token: ${url}`);
  return token;
}

/**
 * Count the canvas's dark and light pixels: a QR code drawn on it has many of both; a blank
 * (or only cleared) canvas has no dark ones.
 */
export async function canvasInk(page, selector) {
  return page.evaluate((sel) => {
    const canvas = document.querySelector(sel);
    if (!canvas || canvas.width === 0 || canvas.height === 0) return null;
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    let dark = 0;
    let light = 0;
    for (let i = 0; i < data.length; i += 4) {
      const luminance = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
      if (data[i + 3] > 128 && luminance < 96) dark += 1;
      else light += 1;
    }
    return { width: canvas.width, height: canvas.height, dark, light };
  }, selector);
}
