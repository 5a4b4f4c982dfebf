import { realmResolver, referenceResolver } from "../../src/core/index.ts";
import { runResolverConformance } from "./conformance.ts";

runResolverConformance("indexed realm", realmResolver);
runResolverConformance("plain reference", referenceResolver);
