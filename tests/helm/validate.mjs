// Validates Kubernetes objects (multi-document YAML on stdin) against the
// Kubernetes API schemas, with kubernetes-models' generated JSON-schema
// validators, and KubeVirt's Plugin (which no npm package models) against
// schemas/ with ajv. Prints one line per object; exits 1 if any object is invalid or
// of a kind this script does not know (an unknown kind must not pass unseen).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
const known = {
  "v1/ConfigMap": "kubernetes-models/v1/ConfigMap",
  "v1/ServiceAccount": "kubernetes-models/v1/ServiceAccount",
  "v1/Secret": "kubernetes-models/v1/Secret",
  "v1/Service": "kubernetes-models/v1/Service",
  "apps/v1/DaemonSet": "kubernetes-models/apps/v1/DaemonSet",
  "cert-manager.io/v1/Certificate": "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate",
  "rbac.authorization.k8s.io/v1/ClusterRole": "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole",
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": "kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding",
};

// kinds from CRDs: the JSON schema in schemas/<apiVersion with / as ->-<kind>.json
const crds = ["plugin.kubevirt.io/v1alpha1/Plugin"];
const here = dirname(fileURLToPath(import.meta.url));
const Ajv = require("ajv");
const ajv = new Ajv({ allErrors: true, strict: false });
function crdValidator(key) {
  const file = join(here, "schemas", key.replaceAll("/", "-") + ".json");
  return ajv.compile(JSON.parse(readFileSync(file, "utf8")));
}

const text = readFileSync(0, "utf8");
let bad = 0;
let count = 0;
for (const doc of parseAllDocuments(text)) {
  if (doc.errors.length) {
    console.log(`INVALID yaml: ${doc.errors.map((e) => e.message).join("; ")}`);
    bad++;
    continue;
  }
  const obj = doc.toJS();
  if (obj === null || obj === undefined) continue;
  count++;
  const key = `${obj.apiVersion}/${obj.kind}`;
  const name = `${key} ${obj.metadata?.namespace ?? "-"}/${obj.metadata?.name ?? "?"}`;
  if (crds.includes(key)) {
    const validate = crdValidator(key);
    if (validate(obj)) {
      console.log(`valid ${name}`);
    } else {
      console.log(`INVALID ${name}: ${ajv.errorsText(validate.errors)}`);
      bad++;
    }
    continue;
  }
  const mod = known[key];
  if (!mod) {
    console.log(`INVALID ${name}: no schema for this kind in the validator`);
    bad++;
    continue;
  }
  const Model = Object.values(require(mod)).find((v) => typeof v === "function");
  try {
    new Model(obj).validate();
    console.log(`valid ${name}`);
  } catch (e) {
    console.log(`INVALID ${name}: ${e.message}`);
    bad++;
  }
}
if (count === 0) {
  console.log("INVALID: no objects on stdin");
  bad++;
}
process.exit(bad ? 1 : 0);
