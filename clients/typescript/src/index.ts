// A typed client for the penguinmails Vault secrets engine, over node-vault.
// Field names are the engine's own (docs/api.md), so a policy, a CLI command
// and this client all speak of the same `rotation_period` or `dkim_signature`.
import nodeVault = require("node-vault");

export type SecretType = "smtp" | "api-keys" | "dkim" | "ssh" | "oauth";
export type APIKeyService = "sendgrid" | "mailgun" | "ses" | "postmark";
export type RotationStatus = "healthy" | "due_soon" | "overdue" | "not_scheduled";

/** Settings every secret takes on write (docs/api.md, "Fields every write accepts"). */
export interface SecretSettings {
  /** seconds, or a duration such as "90d" or "720h"; 0 means the type default */
  rotation_period?: number | string;
  rotation_schedule?: string;
  auto_rotate?: boolean;
  max_uses?: number;
  max_versions?: number;
}

export interface SMTPCredentialInput extends SecretSettings {
  username: string;
  /** left out on create: Vault generates one */
  password?: string;
  host: string;
  port?: number;
  encryption?: "none" | "starttls" | "tls";
  webmail_url?: string;
}

interface APIKeyCommon extends SecretSettings {
  base_url?: string;
  account?: string;
}

export interface APIKeyInputs {
  sendgrid: APIKeyCommon & { api_key: string; api_key_id: string; scopes: string; key_name?: string; region?: "global" | "eu" };
  mailgun: APIKeyCommon & {
    api_key: string;
    key_id: string;
    role: "admin" | "basic" | "sending" | "developer";
    domain?: string;
    key_name?: string;
    region?: "us" | "eu";
  };
  ses: APIKeyCommon & { access_key_id: string; secret_access_key: string; iam_user: string; region: string };
  postmark: APIKeyCommon & { server_token: string; account_token?: string; message_stream?: string };
}

export interface Actor {
  display_name: string;
  entity_id: string;
}

export interface VersionInfo {
  created_time: string;
  created_by: Actor;
  status: string;
  stage?: string;
  grace_until?: string;
}

/** What every read of {type}/{tenant}/{name} answers besides the material. */
export interface SecretMetadata {
  tenant: string;
  name: string;
  version: number;
  current_version: number;
  status: string;
  created_time: string;
  updated_time: string;
  version_created: string;
  versions: Record<string, VersionInfo>;
  last_rotated: string;
  next_rotation: string;
  /** duration text, such as "720h" (the engine's one duration format) */
  rotation_period: string;
  rotation_schedule?: string;
  /** duration text, such as "168h" */
  alert_threshold: string;
  rotation_status: RotationStatus;
  auto_rotate: boolean;
  max_versions: number;
  last_rotation_error?: string;
}

export interface SMTPCredential extends SecretMetadata {
  username: string;
  /** absent on a revoked version */
  password?: string;
  password_generated: boolean;
  host: string;
  port: number;
  encryption: "none" | "starttls" | "tls";
  webmail_url?: string;
}

export type APIKeyCredential<S extends APIKeyService> = SecretMetadata & Omit<APIKeyInputs[S], keyof SecretSettings>;

/** Every answer carries Vault's warnings, which node-vault itself drops. */
export interface Answer {
  warnings: string[];
}

export interface WriteResult extends Answer {
  [field: string]: unknown;
}

export interface SignOptions {
  /** header fields to sign (h=); must include From */
  headers?: string[];
  /** "relaxed/relaxed" by default */
  canonicalization?: string;
  /** dual-algorithm domains: "rsa" (default), "ed25519" or "both" */
  algorithm?: "rsa" | "ed25519" | "both";
}

export interface DKIMSignature extends Answer {
  /** the whole DKIM-Signature header field, folded, ending with CRLF */
  dkim_signature: string;
  /** with algorithm "both": one header field per key, RSA first */
  dkim_signatures?: string[];
  domain: string;
  selector: string;
  version: number;
  key_type: string;
}

export interface DNSRecord {
  name: string;
  type: string;
  status: string;
  selector: string;
  value: string;
  txt_strings: string[];
  version: number;
  grace_until?: string;
  /** with check: true, what the resolvers answered */
  dns?: unknown;
  dns_published?: number;
}

export interface DKIMDNSRecords extends Answer {
  domain: string;
  publish: DNSRecord[];
  revoke: DNSRecord[];
  remove: DNSRecord[];
  delegation?: unknown[];
}

export interface RotateOptions {
  reason?: string;
  incident_id?: string;
  revoke_previous?: boolean;
  /** Postmark: the new server token, made by hand in Postmark */
  server_token?: string;
}

export interface RotationResult extends Answer {
  version: number;
  previous_version?: number;
  revoked_versions?: number[];
  status?: string;
  last_rotated?: string;
  next_rotation?: string;
  rotation_status?: RotationStatus;
  [field: string]: unknown;
}

export interface RotationStatusQuery {
  type?: SecretType | SecretType[];
  tenant?: string;
  status?: RotationStatus | "failing";
  /** seconds, or a duration such as "7d" */
  due_within?: number | string;
  limit?: number;
  /** the previous page's next_after */
  after?: string;
}

export interface RotationStatusRow {
  type: SecretType;
  tenant: string;
  name: string;
  path: string;
  last_rotated: string;
  next_rotation: string;
  status: RotationStatus;
  risk_level: string;
  auto_rotate: boolean;
  failing: boolean;
  last_error: string;
  rotation_failures: number;
}

export interface RotationStatusPage extends Answer {
  secrets: RotationStatusRow[];
  count: number;
  /** empty on the last page */
  next_after: string;
  as_of: string;
  index: { state: "ready" | "rebuilding"; unreadable: string[] };
}

/**
 * A refusal or failure from Vault. `status` is the HTTP status (0 when no
 * answer came); `errors` are Vault's messages, which the engine keeps free of
 * secret values. The request's data is never part of the error.
 */
export class VaultError extends Error {
  constructor(
    readonly operation: string,
    readonly path: string,
    readonly status: number,
    readonly errors: string[],
  ) {
    super(`${operation} ${path}: ${status ? `Vault answered ${status}` : "no answer from Vault"}: ${errors.join("; ")}`);
    this.name = "VaultError";
  }
}

export interface ClientOptions {
  /** a node-vault client to use; else one is made from endpoint and token */
  vault?: nodeVault.client;
  /** default: VAULT_ADDR, else http://127.0.0.1:8200 */
  endpoint?: string;
  /** default: VAULT_TOKEN */
  token?: string;
  /** where the engine is mounted; default "penguinmails" */
  mount?: string;
  /**
   * milliseconds to wait for each of Vault's answers before failing with a
   * VaultError of status 0; default 30000. For the client made here, not for
   * `vault`, which keeps its own settings.
   */
  timeoutMs?: number;
}

// The engine's rule for tenant ids and secret names; checked here as well so
// that no argument can reach another path ("../", "/").
const segmentRule = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const domainRule = /^[A-Za-z0-9._-]{1,253}$/;

function segment(what: string, value: string, rule = segmentRule): string {
  if (typeof value !== "string" || !rule.test(value) || value.includes("..")) {
    throw new TypeError(`invalid ${what}: must match ${rule.source} without ".."`);
  }
  return value;
}

export class PenguinMailsClient {
  readonly vault: nodeVault.client;
  readonly mount: string;

  constructor(options: ClientOptions = {}) {
    // node-vault (axios) waits forever by default: a Vault that accepts the
    // connection and never answers would hang the caller.
    const timeout = options.timeoutMs ?? 30_000;
    this.vault = options.vault ?? nodeVault({ endpoint: options.endpoint, token: options.token, requestOptions: { timeout } });
    this.mount = segment("mount", options.mount ?? "penguinmails");
  }

  /**
   * Stores an SMTP credential or a provider API key as flat fields. A change
   * of the material (password, key, token) makes a new version.
   */
  storeCredential(type: "smtp", tenant: string, name: string, credential: SMTPCredentialInput): Promise<WriteResult>;
  storeCredential<S extends APIKeyService>(type: "api-keys", tenant: string, service: S, credential: APIKeyInputs[S]): Promise<WriteResult>;
  async storeCredential(type: "smtp" | "api-keys", tenant: string, name: string, credential: object): Promise<WriteResult> {
    const path = this.secretPath(type, tenant, name);
    return answer(await this.call("write", path, () => this.vault.write(path, { ...credential })));
  }

  /** Reads the current version, or `version` while it is kept. */
  getCredential(type: "smtp", tenant: string, name: string, options?: { version?: number }): Promise<SMTPCredential & Answer>;
  getCredential<S extends APIKeyService>(
    type: "api-keys",
    tenant: string,
    service: S,
    options?: { version?: number },
  ): Promise<APIKeyCredential<S> & Answer>;
  async getCredential(type: "smtp" | "api-keys", tenant: string, name: string, options: { version?: number } = {}): Promise<Answer> {
    const path = this.secretPath(type, tenant, name);
    return answer(await this.call("read", path, () => this.vault.read(path + query({ version: options.version }))));
  }

  /**
   * Signs an RFC 5322 message with the domain's active DKIM key inside Vault.
   * `message` is the message's base64 text, or its bytes (encoded here).
   * Prepend the answer's dkim_signature to the message unchanged.
   */
  async signDKIM(tenant: string, domain: string, message: string | Uint8Array, options: SignOptions = {}): Promise<DKIMSignature> {
    const path = this.dkimPath(tenant, domain) + "/sign";
    const body: Record<string, unknown> = {
      message: typeof message === "string" ? message : Buffer.from(message).toString("base64"),
    };
    if (options.headers) body.headers = options.headers.join(",");
    if (options.canonicalization) body.canonicalization = options.canonicalization;
    if (options.algorithm) body.algorithm = options.algorithm;
    return answer(await this.call("write", path, () => this.vault.write(path, body)));
  }

  /** The TXT records to publish, to publish as revoked, and to remove. */
  async dkimDNSRecords(tenant: string, domain: string, options: { check?: boolean } = {}): Promise<DKIMDNSRecords> {
    const path = this.dkimPath(tenant, domain) + "/dns";
    const data = answer<DKIMDNSRecords>(await this.call("read", path, () => this.vault.read(path + query({ check: options.check }))));
    return { ...data, publish: data.publish ?? [], revoke: data.revoke ?? [], remove: data.remove ?? [] };
  }

  /** Rotates one secret now; the new material is made inside Vault. */
  async rotate(type: SecretType, tenant: string, name: string, options: RotateOptions = {}): Promise<RotationResult> {
    const path = (type === "dkim" ? this.dkimPath(tenant, name) : this.secretPath(type, tenant, name)) + "/rotate";
    return answer(await this.call("write", path, () => this.vault.write(path, { ...options })));
  }

  /** One page of secrets by rotation state, soonest due first. */
  async rotationStatus(filter: RotationStatusQuery = {}): Promise<RotationStatusPage> {
    const path = `${this.mount}/rotation/status`;
    const type = Array.isArray(filter.type) ? filter.type.join(",") : filter.type;
    const q = query({ ...filter, type });
    const data = answer<RotationStatusPage>(await this.call("read", path, () => this.vault.read(path + q)));
    return { ...data, secrets: data.secrets ?? [] };
  }

  private secretPath(type: SecretType, tenant: string, name: string): string {
    return `${this.mount}/${type}/${segment("tenant", tenant)}/${segment("name", name)}`;
  }

  private dkimPath(tenant: string, domain: string): string {
    return `${this.mount}/dkim/${segment("tenant", tenant)}/${segment("domain", domain, domainRule)}`;
  }

  /** Runs one node-vault call and turns its failures into a VaultError. */
  private async call(operation: string, path: string, run: () => Promise<unknown>): Promise<unknown> {
    try {
      return await run();
    } catch (err) {
      throw toVaultError(operation, path, err);
    }
  }
}

function toVaultError(operation: string, path: string, err: unknown): VaultError {
  const response = (err as { response?: { statusCode?: number; body?: { errors?: unknown } } }).response;
  if (response && typeof response.statusCode === "number") {
    const errors = Array.isArray(response.body?.errors) ? response.body.errors.map(String) : [];
    return new VaultError(operation, path, response.statusCode, errors);
  }
  // No HTTP answer (refused connection, timeout): node-vault's message names
  // the cause, never the request's data.
  return new VaultError(operation, path, 0, [err instanceof Error ? err.message : String(err)]);
}

/** A query string of the defined values, or "". */
function query(params: Record<string, string | number | boolean | undefined>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== "")
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

/** A Vault answer's data with its warnings. */
function answer<T>(body: unknown): T & Answer {
  const b = (body ?? {}) as { data?: object; warnings?: string[] | null };
  return { ...(b.data ?? {}), warnings: b.warnings ?? [] } as T & Answer;
}
