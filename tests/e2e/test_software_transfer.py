"""Software carried to another Rosetta: `rosetta software export` writes the image (an OCI
archive) and the entry (JSON); `rosetta software import` brings both back — with the same
digest, even once the original image is gone — and the imported entry runs."""

import json
import time
import uuid


def pushed(api, software_id: int, timeout: float = 60) -> dict:
    """The entry once the platform's registry holds its image."""
    deadline = time.monotonic() + timeout
    while True:
        entry = api.get(f"/api/software/{software_id}").json()
        if entry["registry_state"] == "pushed" or time.monotonic() > deadline:
            assert entry["registry_state"] == "pushed", entry
            return entry
        time.sleep(0.2)


def test_an_exported_entry_comes_back_with_its_digest_and_runs(platform, tmp_path):
    maker = platform.create_user("exporter")
    taker = platform.create_user("importer")
    image = f"localhost/rosetta-test/carried-{uuid.uuid4().hex[:8]}:1"
    platform.build_image(image, f"FROM localhost/rosetta/hello\nLABEL carried={uuid.uuid4().hex}\n")  # its own digest
    try:
        with platform.api(maker) as api:
            fields = {"honours_base_port": True, "environment": {"MOOD": "calm"}}
            added = api.post("/api/software", json={"name": "carried", "version": "1", "image": image, **fields})
            assert added.status_code == 201, added.text
            original = pushed(api, added.json()["id"])
        folder = tmp_path / "carried"
        said = platform.rosetta("software", "export", "carried:1", "--owner", "exporter", "-o", str(folder)).stdout
        metadata = json.loads((folder / "software.json").read_text())
        assert metadata["digest"] in said and metadata["environment"] == {"MOOD": "calm"}
        assert metadata["catalogue_digest"] == original["digest"] == original["registry_digest"]
        assert (folder / "image.tar").stat().st_size > 1000
        platform.podman("rmi", image)  # the archive alone carries it from here

        tampered = tmp_path / "tampered"
        tampered.mkdir()
        (tampered / "image.tar").write_bytes((folder / "image.tar").read_bytes())
        (tampered / "software.json").write_text(json.dumps({**metadata, "digest": "sha256:" + "0" * 64}))
        refused = platform.rosetta("software", "import", str(tampered), "--owner", "importer", check=False)
        assert refused.returncode != 0 and "not the sha256:000" in refused.stderr

        imported = platform.rosetta("software", "import", str(folder), "--owner", "importer").stdout
        assert "Imported carried:1" in imported and metadata["digest"] in imported
        again = platform.rosetta("software", "import", str(folder), "--owner", "importer", check=False)
        assert again.returncode != 0 and "already software called carried:1" in again.stderr
        with platform.api(taker) as api:
            entry = next(e for e in api.get("/api/software", params={"owner": "mine"}).json() if e["name"] == "carried")
            assert entry["environment"] == {"MOOD": "calm"} and entry["image"].startswith("localhost/rosetta-user/")
            assert entry["image_digest"] == metadata["digest"]  # the image as it was exported
            assert pushed(api, entry["id"])["digest"] == original["digest"]  # and as the catalogue showed it
            task_id = platform.start_task(api, software="carried:1")
            task = platform.wait_for_task(api, task_id, {"running"})
            assert task["software_digest"] == original["digest"]
            assert platform.task_client(task_id, taker).get("/").status_code == 200
            api.post(f"/api/tasks/{task_id}/stop")
            platform.wait_for_task(api, task_id, {"stopped"})
        with platform.api(maker) as api:  # the importer's entry is theirs: its image is not anyone's to name
            taken = api.post("/api/software", json={"name": "taken", "version": "1", "image": entry["image"]})
            assert taken.status_code == 400 and "not an image you can use" in taken.json()["detail"]
        platform.podman("rmi", "--force", entry["image"])
    finally:
        platform.podman("rmi", "--force", "--ignore", image)
