// Runs the client against a real Vault with the engine mounted at
// penguinmails/ (VAULT_ADDR, VAULT_TOKEN; integration/typescript_test.go
// starts one). DKIM signatures are checked with mailauth, an independent
// verifier, fed the records the engine tells us to publish.
import { after, before, describe, test } from "node:test";
import assert = require("node:assert/strict");
import { randomBytes } from "node:crypto";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { dkimVerify } from "mailauth/lib/dkim/verify";
import nodeVault = require("node-vault");
import { PenguinMailsClient, VaultError } from "../src/index";

// VAULT_TOKEN holds only the README's policy (policy.hcl), so the tests also
// prove it is enough; PENGUINMAILS_ADMIN_TOKEN makes DKIM keys and cleans up.
for (const v of ["VAULT_ADDR", "VAULT_TOKEN", "PENGUINMAILS_ADMIN_TOKEN"]) {
  if (!process.env[v]) throw new Error(`${v} must be set: the Vault to test against`);
}

const pm = new PenguinMailsClient();
const admin = nodeVault({ token: process.env.PENGUINMAILS_ADMIN_TOKEN });
const run = randomBytes(4).toString("hex");
const tenant = `ts-${run}`;
// Every secret value the tests send carries PENGUINMAILS_SECRET_MARK, which
// integration/typescript_test.go remembers: the Go harness fails the run if
// one of them reaches Vault's log or the audit log.
const mark = process.env.PENGUINMAILS_SECRET_MARK ?? randomBytes(16).toString("hex");
const secret = (what: string) => `${what}-${mark}`;
const cleanup: string[] = [];

after(async () => {
  for (const path of cleanup) await admin.delete(path).catch(() => undefined);
});

/** Asserts that a secret read back is the one stored, printing neither. */
function sameSecret(got: unknown, want: string, what: string): void {
  assert.ok(got === want, `${what} read back is not the one stored`);
}

/** Awaits a promise that must fail with a VaultError of this status. */
async function refused(p: Promise<unknown>, status: number, mention?: string): Promise<VaultError> {
  const err = await p.then(
    () => assert.fail(`succeeded, want a ${status}`),
    (e: unknown): unknown => e,
  );
  assert.ok(err instanceof VaultError, `want a VaultError, got ${String(err)}`);
  assert.equal(err.status, status, err.message);
  if (mention) assert.ok(err.errors.some((e) => e.includes(mention)), `errors ${JSON.stringify(err.errors)} lack ${mention}`);
  return err;
}

describe("SMTP credentials", () => {
  const name = "mail-1";
  before(() => cleanup.push(`penguinmails/smtp/${tenant}/${name}`));

  test("store, get, new version, old version", async () => {
    const pw1 = secret("pw1");
    const w = await pm.storeCredential("smtp", tenant, name, {
      username: "admin@example.com",
      password: pw1,
      host: "smtp.example.com",
      port: 587,
      encryption: "starttls",
      rotation_period: "60d",
    });
    assert.deepEqual(w.warnings, []);
    assert.ok(w.password === undefined, "a write answers no password");

    const v1 = await pm.getCredential("smtp", tenant, name);
    sameSecret(v1.password, pw1, "password 1");
    assert.equal(v1.username, "admin@example.com");
    assert.equal(v1.host, "smtp.example.com");
    assert.equal(v1.port, 587);
    assert.equal(v1.version, 1);
    assert.equal(v1.rotation_period, "1440h");
    assert.equal(v1.rotation_status, "healthy");

    const pw2 = secret("pw2");
    await pm.storeCredential("smtp", tenant, name, { username: "admin@example.com", password: pw2, host: "smtp.example.com" });
    const v2 = await pm.getCredential("smtp", tenant, name);
    sameSecret(v2.password, pw2, "password 2");
    assert.equal(v2.version, 2);
    const old = await pm.getCredential("smtp", tenant, name, { version: 1 });
    sameSecret(old.password, pw1, "version 1's password");
    assert.equal(old.version, 1);
  });

  test("rotate makes a new password inside Vault", async () => {
    const before = await pm.getCredential("smtp", tenant, name);
    const r = await pm.rotate("smtp", tenant, name, { reason: "typescript client test" });
    assert.equal(r.version, before.current_version + 1);
    assert.equal(r.previous_version, before.current_version);
    const now = await pm.getCredential("smtp", tenant, name);
    assert.equal(now.version, r.version);
    assert.ok(now.password && now.password !== before.password, "the rotation kept the password");
  });

  test("refusals carry Vault's status and message", async () => {
    await refused(pm.storeCredential("smtp", tenant, "no-host", { username: "a@example.com" } as never), 400, "host");
    await refused(pm.storeCredential("smtp", tenant, name, { username: "a@example.com", host: "smtp.example.com", port: 70000 }), 400, "port");
    const missing = await refused(pm.getCredential("smtp", tenant, "absent"), 404);
    assert.match(missing.message, /read penguinmails\/smtp\/ts-[0-9a-f]+\/absent: Vault answered 404/);
    const stranger = new PenguinMailsClient({ token: "hvs.not-a-token" });
    await refused(stranger.getCredential("smtp", tenant, name), 403);
    const nobody = new PenguinMailsClient({ endpoint: "http://127.0.0.1:1", token: "x" });
    const down = await refused(nobody.getCredential("smtp", tenant, name), 0);
    assert.match(down.message, /no answer from Vault/);
    // The policy grants no export: the client's token cannot read a DKIM key.
    await assert.rejects(pm.vault.write(`penguinmails/dkim/${tenant}/example.com/private`, {}), (e: { response?: { statusCode: number } }) => {
      assert.equal(e.response?.statusCode, 403);
      return true;
    });
  });

  test("a Vault that never answers is a VaultError after timeoutMs, not a hang", { timeout: 10_000 }, async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((s) => sockets.add(s)); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const slow = new PenguinMailsClient({ endpoint: `http://127.0.0.1:${port}`, token: "x", timeoutMs: 200 });
      const err = await refused(slow.getCredential("smtp", tenant, name), 0);
      assert.match(err.message, /no answer from Vault: timeout of 200ms exceeded/);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });

  test("a refused write never echoes the secret", async () => {
    const pw = secret("never-echo");
    const err = await refused(pm.storeCredential("smtp", tenant, "bad", { username: "a b", password: pw, host: "smtp.example.com" }), 400, "username");
    assert.ok(!err.message.includes(pw) && !JSON.stringify(err.errors).includes(pw));
  });

  test("names that would leave the path are refused before any request", async () => {
    for (const bad of ["../smtp", "a/b", "", ".hidden"]) {
      await assert.rejects(pm.getCredential("smtp", bad, name), TypeError);
      await assert.rejects(pm.getCredential("smtp", tenant, bad), TypeError);
    }
  });
});

// The platform's own code, as the feature document writes it, with node-vault
// alone: the KV v2 shape of write, and update (PATCH) of one setting.
describe("node-vault as the platform calls it", () => {
  const path = `penguinmails/smtp/${tenant}-kv/kv-shaped`; // a tenant of its own: the status test lists the run's tenant
  before(() => cleanup.push(path));

  test("write(path, { data: credential }) stores the credential", async () => {
    const pw = secret("kv");
    await admin.write(path, { data: { username: "u@example.com", password: pw, host: "smtp.example.com", port: "587" } });
    const got = await admin.read(path);
    sameSecret(got.data.password, pw, "password");
    assert.equal(got.data.port, 587);
    await admin.write(path, { data: { password: `${pw}-2` } });
    const again = await admin.read(path);
    sameSecret(again.data.password, `${pw}-2`, "password 2");
    assert.equal(again.data.version, 2);
  });

  test("data beside flat fields is a 400, not a silent choice", async () => {
    const err = await admin.write(path, { host: "smtp.example.com", data: { password: "x" } }).then(
      () => assert.fail("succeeded, want a 400"),
      (e: { response?: { statusCode?: number } }) => e,
    );
    assert.equal(err.response?.statusCode, 400);
  });

  test("update (PATCH) changes one setting and keeps the password", async () => {
    const before = await admin.read(path);
    await admin.update(path, { rotation_period: "60d" });
    const after = await admin.read(path);
    assert.equal(after.data.rotation_period, "1440h");
    sameSecret(after.data.password, before.data.password, "password after the patch");
    assert.equal(after.data.version, before.data.version);
  });
});

describe("API keys", () => {
  before(() => cleanup.push(`penguinmails/api-keys/${tenant}/postmark`, `penguinmails/api-keys/${tenant}/sendgrid`));

  test("postmark and sendgrid keys round-trip with their own fields", async () => {
    const token = secret("pm-token");
    await pm.storeCredential("api-keys", tenant, "postmark", { server_token: token });
    const pmk = await pm.getCredential("api-keys", tenant, "postmark");
    sameSecret(pmk.server_token, token, "server_token");
    assert.equal(pmk.message_stream, "outbound");
    assert.equal(pmk.version, 1);

    await pm.storeCredential("api-keys", tenant, "sendgrid", {
      api_key: `SG.${mark}.key`,
      api_key_id: `id-${run}`,
      scopes: "mail.send",
      key_name: "ts-client",
    });
    const sg = await pm.getCredential("api-keys", tenant, "sendgrid");
    sameSecret(sg.api_key, `SG.${mark}.key`, "api_key");
    assert.equal(sg.api_key_id, `id-${run}`);
    assert.equal(sg.region, "global");
  });

  test("a field of another service is a 400 naming it", async () => {
    await refused(pm.storeCredential("api-keys", tenant, "postmark", { server_token: "x", api_key: "y" } as never), 400, "api_key");
  });
});

describe("DKIM", () => {
  const domain = `ts-${run}.example.com`;
  const message = Buffer.from(
    "From: sender@" + domain + "\r\nTo: rcpt@example.org\r\nSubject: typescript client\r\n" +
      "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + run + "@" + domain + ">\r\n\r\nHello from the client.\r\n",
  );

  before(async () => {
    cleanup.push(`penguinmails/dkim/${tenant}/${domain}`);
    // Creating keys is an operator's step, not the client's: plain node-vault.
    await admin.write(`penguinmails/dkim/${tenant}/${domain}`, { key_type: "rsa-2048", activation: "immediate" });
  });

  /** A resolver answering what dkimDNSRecords says is published. */
  async function publishedResolver() {
    const dns = await pm.dkimDNSRecords(tenant, domain);
    const txt = new Map(dns.publish.map((r) => [r.name, r.txt_strings]));
    return async (name: string, rrtype: string) => {
      const strings = rrtype === "TXT" ? txt.get(name) : undefined;
      if (!strings) throw Object.assign(new Error(`no ${rrtype} record at ${name}`), { code: "ENOTFOUND" });
      return [strings];
    };
  }

  test("dkimDNSRecords lists the active key's TXT record", async () => {
    const dns = await pm.dkimDNSRecords(tenant, domain);
    assert.equal(dns.domain, domain);
    assert.equal(dns.publish.length, 1);
    const rec = dns.publish[0];
    assert.equal(rec.type, "TXT");
    assert.equal(rec.status, "active");
    assert.equal(rec.name, `${rec.selector}._domainkey.${domain}`);
    assert.match(rec.value, /^v=DKIM1; k=rsa; p=/);
    assert.equal(rec.txt_strings.join(""), rec.value);
    assert.deepEqual(dns.revoke, []);
  });

  test("signDKIM's header verifies with an independent verifier, and a changed body does not", async () => {
    const sig = await pm.signDKIM(tenant, domain, message.toString("base64"));
    assert.match(sig.dkim_signature, /^DKIM-Signature: /);
    assert.ok(sig.dkim_signature.endsWith("\r\n"));
    assert.equal(sig.domain, domain);
    const resolver = await publishedResolver();

    const signed = Buffer.concat([Buffer.from(sig.dkim_signature), message]);
    const ok = await dkimVerify(signed, { resolver });
    assert.equal(ok.results.length, 1);
    assert.equal(ok.results[0].status.result, "pass", JSON.stringify(ok.results[0].status));
    assert.equal(ok.results[0].signingDomain, domain);
    assert.equal(ok.results[0].selector, sig.selector);

    const tampered = Buffer.from(signed.toString().replace("Hello from", "Goodbye from"));
    const bad = await dkimVerify(tampered, { resolver });
    assert.notEqual(bad.results[0].status.result, "pass", "a changed body still verifies");
  });

  test("signDKIM takes the message's bytes as well", async () => {
    const sig = await pm.signDKIM(tenant, domain, new Uint8Array(message), { headers: ["From", "To", "Subject"] });
    assert.match(sig.dkim_signature, /h=From:To:Subject;/);
    const res = await dkimVerify(Buffer.concat([Buffer.from(sig.dkim_signature), message]), { resolver: await publishedResolver() });
    assert.equal(res.results[0].status.result, "pass", JSON.stringify(res.results[0].status));
  });

  test("signing for a domain without a key is a 404", async () => {
    await refused(pm.signDKIM(tenant, `absent-${run}.example.com`, message.toString("base64")), 404);
  });

  test("after rotate, the new key signs and the old one stays published in its grace period", async () => {
    const r = await pm.rotate("dkim", tenant, domain, { reason: "typescript client test" });
    assert.equal(r.version, 2);
    const dns = await pm.dkimDNSRecords(tenant, domain);
    // The domain activates new keys at once (activation=immediate).
    assert.deepEqual(dns.publish.map((p) => [p.version, p.status]), [[2, "active"], [1, "retiring"]]);
    const sig = await pm.signDKIM(tenant, domain, message);
    assert.equal(sig.version, 2);
    assert.equal(sig.selector, dns.publish[0].selector);
    const res = await dkimVerify(Buffer.concat([Buffer.from(sig.dkim_signature), message]), { resolver: await publishedResolver() });
    assert.equal(res.results[0].status.result, "pass", JSON.stringify(res.results[0].status));
  });
});

describe("rotation status", () => {
  test("lists this run's secrets by tenant and type", async () => {
    const page = await pm.rotationStatus({ tenant, type: ["smtp", "api-keys"] });
    const paths = page.secrets.map((s) => s.path).sort();
    assert.deepEqual(paths, [`api-keys/${tenant}/postmark`, `api-keys/${tenant}/sendgrid`, `smtp/${tenant}/mail-1`]);
    assert.equal(page.count, 3);
    for (const row of page.secrets) {
      assert.equal(row.tenant, tenant);
      assert.ok(["healthy", "due_soon", "overdue", "not_scheduled"].includes(row.status), row.status);
    }
    const smtpOnly = await pm.rotationStatus({ tenant, type: "smtp", limit: 1 });
    assert.deepEqual(
      smtpOnly.secrets.map((s) => s.name),
      ["mail-1"],
    );
  });

  test("a bad filter is a 400 naming the field", async () => {
    await refused(pm.rotationStatus({ status: "sideways" as never }), 400, "status");
  });
});
