// `make fixtures`: writes the generated test models into test/fixtures/models.
import {
  eosEagerModel, tinyGemma3Mmproj, tinyIdefics3Mmproj, tinyIdefics3Model, tinyMmproj, tinyModel, tinyQwen25vlMmproj, tinyQwen2vlModel, toolEagerModel,
} from "./fixtures.js";

for (const file of [tinyModel(), eosEagerModel(), toolEagerModel(), tinyMmproj(), tinyGemma3Mmproj(), tinyQwen2vlModel(), tinyQwen25vlMmproj(), tinyIdefics3Model(), tinyIdefics3Mmproj()]) process.stdout.write(`fixture ${file}\n`);
