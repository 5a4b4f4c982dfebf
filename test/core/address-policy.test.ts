// The gateway address policy on its own: which addresses a tenant may publish.
import { describe, expect, it } from "vitest";
import {
  AddressPolicySchema,
  type AddressRules,
  addressRefusal,
  recordAddressProblem,
  recordNameProblem,
  refusedAddressClass,
} from "../../src/core/address-policy.ts";
import { RecordSchema } from "../../src/core/schema.ts";

const DEFAULT: AddressRules = {};

describe("address policy", () => {
  it("the default refuses loopback, link-local, unspecified, multicast, unix and loopback names", () => {
    const refused = [
      "ipv4://127.0.0.1:80",
      "ipv4://127.255.0.9:80",
      "ipv6://[::1]:80",
      "ipv6://[0:0:0:0:0:0:0:1]:80",
      "ipv6://[::ffff:127.0.0.1]:80",
      "ipv6://[::ffff:7f00:1]:80",
      "ipv6://[::127.0.0.1]:80",
      "ipv4://169.254.169.254:80",
      "ipv6://[fe80::1]:80",
      "ipv6://[FE80::abcd]:80",
      "ipv6://[::ffff:169.254.169.254]:80",
      "ipv4://0.0.0.0:80",
      "ipv6://[::]:80",
      "ipv4://224.0.0.1:80",
      "ipv4://239.1.2.3:80",
      "ipv4://255.255.255.255:80",
      "ipv6://[ff02::1]:80",
      "unix:///var/run/agent.sock",
      "dns://localhost:80",
      "dns://LOCALHOST.:80",
      "dns://admin.localhost:80",
      "dns://ip6-localhost:80",
      "dns://127.0.0.1:80",
      "dns://127.1:80",
      "dns://2130706433:80",
      "dns://0x7f000001:80",
    ];
    for (const a of refused) expect(addressRefusal(a, DEFAULT), a).not.toBeNull();
    const allowed = [
      "ipv4://10.1.2.3:80",
      "ipv4://192.168.1.1:80",
      "ipv4://8.8.8.8:53",
      "ipv6://[fd00::1]:80",
      "ipv6://[2001:db8::1]:80",
      "dns://relay.example.com:443",
      "dns://relay-0.relay.ns.svc.cluster.local:7000",
    ];
    for (const a of allowed) expect(addressRefusal(a, DEFAULT), a).toBeNull();
  });

  it("flags allow loopback, link-local and unix; nothing allows multicast or unspecified", () => {
    const open: AddressRules = { allow_loopback: true, allow_link_local: true, allow_unix: true };
    for (const a of ["ipv4://127.0.0.1:80", "dns://localhost:80", "ipv4://169.254.1.1:80", "unix:///tmp/s"]) {
      expect(addressRefusal(a, open), a).toBeNull();
    }
    for (const a of ["ipv4://0.0.0.0:80", "ipv4://224.0.0.1:80", "ipv6://[::]:80"]) {
      expect(addressRefusal(a, open), a).not.toBeNull();
    }
  });

  it("names the refused class of an address a DNS name resolved to", () => {
    const cases: Array<[string, ReturnType<typeof refusedAddressClass>]> = [
      ["127.0.0.1", "loopback"],
      ["127.9.9.9", "loopback"],
      ["::1", "loopback"],
      ["::ffff:127.0.0.1", "loopback"],
      ["169.254.169.254", "link_local"],
      ["fe80::1", "link_local"],
      ["0.0.0.0", "never"],
      ["::", "never"],
      ["224.0.0.1", "never"],
      ["255.255.255.255", "never"],
      ["10.0.0.1", undefined],
      ["fd00::1", undefined],
      ["not-an-ip", undefined],
    ];
    for (const [ip, cls] of cases) expect(refusedAddressClass(ip), ip).toBe(cls);
  });

  it("cidrs and dns patterns are allowlists", () => {
    const rules: AddressRules = {
      cidrs: ["10.20.0.0/16", "fd00:1::/32"],
      dns: ["*.svc.cluster.local", "edge.example.com"],
    };
    expect(addressRefusal("ipv4://10.20.5.5:1", rules)).toBeNull();
    expect(addressRefusal("ipv4://10.21.5.5:1", rules)).toContain("outside");
    expect(addressRefusal("ipv6://[fd00:1:ffff::1]:1", rules)).toBeNull();
    expect(addressRefusal("ipv6://[fd00:2::1]:1", rules)).toContain("outside");
    expect(addressRefusal("dns://a.b.svc.cluster.local:1", rules)).toBeNull();
    expect(addressRefusal("dns://svc.cluster.local:1", rules)).toContain("not among");
    expect(addressRefusal("dns://edge.example.com:1", rules)).toBeNull();
    expect(addressRefusal("dns://x.edge.example.com:1", rules)).toContain("not among");
    // An IP literal written as a DNS name is an IP.
    expect(addressRefusal("dns://10.20.1.1:1", rules)).toBeNull();
    expect(addressRefusal("dns://10.99.1.1:1", rules)).toContain("outside");
    expect(addressRefusal("ipv4://10.20.1.1:1", { cidrs: [] })).toContain("outside");
    // A resolver reads a leading zero as octal (10.024.1.1 is 10.20.1.1 to inet_aton, 10.024.1.1 as
    // decimal is outside): never checked as one address and dialled as another.
    for (const sneaky of ["dns://10.024.1.1:1", "dns://10.20.01.1:1", "dns://010.20.1.1:1", "dns://10.20.1.00:1"]) {
      expect(addressRefusal(sneaky, rules), sneaky).toContain("numeric address");
      expect(addressRefusal(sneaky, {}), sneaky).toContain("numeric address");
    }
    expect(addressRefusal("dns://10.0.0.1:1", {})).toBeNull();
  });

  it("names the exact field of a refused address", () => {
    const record = RecordSchema.parse({
      name: "r",
      metadata: { namespace_name: "b" },
      gateway: [
        { priority: 1, address: "ipv4://10.0.0.1:1" },
        { priority: 2, address: ["ipv4://10.0.0.2:1", "ipv4://127.0.0.1:9"] },
      ],
    });
    expect(recordAddressProblem(record, {})).toMatchObject({ path: "gateway[1].address[1]" });
    expect(recordAddressProblem(record, {}, [3])?.path).toBe("[3].gateway[1].address[1]");
    expect(recordAddressProblem(record, { namespaces: { b: { allow_loopback: true } } })).toBeNull();
    expect(recordAddressProblem(record, { default: { allow_loopback: true }, namespaces: { b: {} } })).not.toBeNull();
  });

  it("the policy schema refuses bad ranges and patterns by path", () => {
    const r = AddressPolicySchema.safeParse({
      default: { cidrs: ["10.0.0.0/33", "nope"], dns: ["Bad..name"] },
      namespaces: { "a\nb": {} },
    });
    expect(r.success).toBe(false);
    const paths = r.error?.issues.map((i) => i.path.join("."));
    expect(paths).toEqual(expect.arrayContaining(["default.cidrs.0", "default.cidrs.1", "default.dns.0"]));
    expect(AddressPolicySchema.safeParse({ default: { cidrs: ["::ffff:10.0.0.0/104"] } }).success).toBe(true);
  });

  it("record names: exact names and prefixes of the record's namespace, else the default's; omitted in both allows any", () => {
    const policy = AddressPolicySchema.parse({
      default: { names: ["shared-*"] },
      namespaces: { a: { names: ["a-*", "db"] }, open: {}, none: { names: [] }, all: { names: ["*"] } },
    });
    const rec = (name: string, ns?: string) =>
      RecordSchema.parse({ type: "node", name, ...(ns ? { metadata: { namespace_name: ns } } : {}) });
    const cases: Array<[string, string | undefined, boolean]> = [
      ["a-0", "a", true],
      ["a-b.c", "a", true],
      ["db", "a", true],
      ["db-2", "a", false],
      ["b-0", "a", false],
      ["shared-x", "zz", true],
      ["x", "zz", false],
      ["shared-x", undefined, true],
      ["anything", "open", false],
      ["shared-y", "open", true],
      ["anything", "none", false],
      ["anything", "all", true],
    ];
    for (const [name, ns, allowed] of cases) {
      expect(recordNameProblem(rec(name, ns), policy) === null, `${name} in ${ns}`).toBe(allowed);
    }
    expect(recordNameProblem(rec("anything", "zz"), {})).toBeNull();
    // Rules given for a namespace's addresses alone keep the default's names.
    const lab = AddressPolicySchema.parse({ default: { names: [] }, namespaces: { lab: { allow_loopback: true } } });
    expect(recordNameProblem(rec("payments-api", "lab"), lab)).toContain("no record names");
    // A namespace named after an Object member gets the default, not Object's own property.
    expect(recordNameProblem(rec("x", "constructor"), policy)).toContain("'x' is not among the names");
    expect(AddressPolicySchema.safeParse(JSON.parse('{"namespaces": {"__proto__": {}}}')).success).toBe(false);
  });
});
