// `make fixtures`: writes the generated test models into test/fixtures/models.
import { eosEagerModel, tinyModel } from "./fixtures.js";

for (const file of [tinyModel(), eosEagerModel()]) process.stdout.write(`fixture ${file}\n`);
