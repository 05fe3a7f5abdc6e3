// The part of mailauth (an independent DKIM verifier) the tests use.
declare module "mailauth/lib/dkim/verify" {
  type Resolver = (name: string, rrtype: string) => Promise<string[][]>;
  interface DKIMResult {
    signingDomain: string;
    selector: string;
    status: { result: string; comment?: string };
  }
  export function dkimVerify(message: Buffer | string, options: { resolver: Resolver }): Promise<{ results: DKIMResult[] }>;
}
