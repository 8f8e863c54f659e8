// `make fixtures`: writes the generated test models into test/fixtures/models.
import { eosEagerModel, tinyGemma3Mmproj, tinyMmproj, tinyModel, toolEagerModel } from "./fixtures.js";

for (const file of [tinyModel(), eosEagerModel(), toolEagerModel(), tinyMmproj(), tinyGemma3Mmproj()]) process.stdout.write(`fixture ${file}\n`);
