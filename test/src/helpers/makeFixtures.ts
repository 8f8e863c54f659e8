// `make fixtures`: writes the generated test models into test/fixtures/models.
import { eosEagerModel, tinyMmproj, tinyModel, toolEagerModel } from "./fixtures.js";

for (const file of [tinyModel(), eosEagerModel(), toolEagerModel(), tinyMmproj()]) process.stdout.write(`fixture ${file}\n`);
