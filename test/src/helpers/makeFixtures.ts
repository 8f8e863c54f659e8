// `make fixtures`: writes the generated test models into test/fixtures/models.
import { eosEagerModel, tinyModel, toolEagerModel } from "./fixtures.js";

for (const file of [tinyModel(), eosEagerModel(), toolEagerModel()]) process.stdout.write(`fixture ${file}\n`);
