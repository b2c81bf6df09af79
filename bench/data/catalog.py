"""What each dataset is: shape, classes, sizes, training augmentation, and where its
files may live under the data root (tried in order; the first present one is used)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import Registry


@dataclass(frozen=True)
class Source:
    """One on-disk layout of a dataset.

    ``format`` names a reader in :mod:`bench.data.readers`; ``path`` is relative to the
    data root. ``exact``: True if the reader verifies checksums of the original files,
    False for a known substitute (labelled as such everywhere), None if unverifiable.
    """

    format: str
    path: str
    exact: bool | None
    expect: str  # the files a user must provide, for error messages
    note: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    shape: tuple[int, ...]  # C, H, W for images; (d,) for vectors
    n_train: int
    n_test: int
    augment: str  # "crop_flip" | "crop" | "none" (random crop pads by 4 with zeros)
    obtain: str  # how to get the files
    sources: tuple[Source, ...] = field(default_factory=tuple)
    generator: str | None = None  # a function in bench.data.generated: the data is defined by a paper
    extends: str | None = None    # extra training data for this dataset (its classes, its image shape)
    classes: tuple[str, ...] | None = None   # class names in label order (an ImageFolder's class folders)
    loader: str = "device"        # "device": decoded once, kept on the device; "stream": files decoded by
                                  # workers per batch (bench/data/stream.py), for ImageNet-sized data


DATASETS: Registry[DatasetInfo] = Registry("dataset")

# md5 of the original files (CIFAR/SVHN: as published with torchvision's loaders; MNIST: the
# uncompressed IDX files of the original release), by source path: the files each format reads.
KNOWN_MD5 = {
    "cifar-10-batches-py": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
    "cifar-100-python": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    },
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    },
    "MNIST/raw": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
}

DIGITS = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
    camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
    dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
    leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
    otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
    road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
    sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
    wardrobe whale willow_tree wolf woman worm""".split())   # CIFAR-100's fine labels, in label order


def _add(info: DatasetInfo) -> None:
    DATASETS.register(info.name)(info)


def _imagefolder(path: str, exact: bool | None = None, note: str = "") -> Source:
    return Source("imagefolder", path, exact, f"{path}/{{train,test}}/<class>/<image>", note)


_add(DatasetInfo(
    "mnist", 10, (1, 28, 28), 60000, 10000, augment="none", classes=DIGITS,
    obtain="torchvision.datasets.MNIST(root=<data root>, download=True), or `bench data download mnist`",
    sources=(
        Source("mnist_idx", "MNIST/raw", True,
               "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
        _imagefolder("mnist"),
    ),
))
_add(DatasetInfo(
    "cifar10", 10, (3, 32, 32), 50000, 10000, augment="crop_flip", classes=CIFAR10_CLASSES,
    obtain="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz extracted into the data root, "
           "or `bench data download cifar10`",
    sources=(
        Source("cifar_pickle", "cifar-10-batches-py", True,
               "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
        _imagefolder("cifar10-jpeg", exact=False,
                     note="CIFAR-10 re-encoded as JPEG by a public mirror: a substitute, not CIFAR-10"),
        _imagefolder("cifar10"),
    ),
))
_add(DatasetInfo(
    "cifar100", 100, (3, 32, 32), 50000, 10000, augment="crop_flip", classes=CIFAR100_CLASSES,
    obtain="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz extracted into the data root, "
           "or `bench data download cifar100`",
    sources=(
        Source("cifar_pickle", "cifar-100-python", True, "cifar-100-python/{train,test,meta}"),
        _imagefolder("cifar100"),
    ),
))
_add(DatasetInfo(
    # No augmentation for digits: HAT's paper is silent; flips would change digit identity.
    "svhn", 10, (3, 32, 32), 73257, 26032, augment="none", classes=DIGITS,
    obtain="http://ufldl.stanford.edu/housenumbers/{train,test}_32x32.mat into <data root>/svhn/, "
           "or `bench data download svhn`",
    sources=(
        Source("svhn_mat", "svhn", True, "svhn/{train,test}_32x32.mat"),
        _imagefolder("svhn"),
    ),
))
_add(DatasetInfo(
    # Test split = the labelled validation set (the test set has no labels).
    "tinyimagenet200", 200, (3, 64, 64), 100000, 10000, augment="crop_flip",
    obtain="http://cs231n.stanford.edu/tiny-imagenet-200.zip extracted into the data root "
           "(no automatic download)",
    sources=(
        Source("tinyimagenet", "tiny-imagenet-200", None,
               "tiny-imagenet-200/{wnids.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,"
               "val/val_annotations.txt}",
               note="original layout; file checksums are not published, so unverified"),
        _imagefolder("tinyimagenet200"),
    ),
))
_add(DatasetInfo(
    # HAT Sec. 3 / App. A: two noisy concentric circles in x1-x2, separable along x3.
    "toy3d", 2, (3,), 2000, 2000, augment="none", generator="hat_toy",
    obtain="generated from the constants of HAT App. A (nothing to download)",
))

_add(DatasetInfo(
    # Extra training data only (no test split): the 500K Tiny Images of Carmon et al. (2019),
    # pseudo-labelled with CIFAR-10's classes by their standard model; robust self-training
    # (HAT Table 4, BAT Table 3) mixes it into every batch (bench.data.loader.MixedLoader).
    "ti500k", 10, (3, 32, 32), 500000, 0, augment="crop_flip", extends="cifar10",
    obtain="ti_500K_pseudo_labeled.pickle from https://github.com/yaircarmon/semisup-adv (the download "
           "link in its README, Carmon et al. 2019) placed in the data root",
    sources=(
        Source("pseudo_pickle", "ti_500K_pseudo_labeled.pickle", None,
               "ti_500K_pseudo_labeled.pickle (a pickle: 'data' 500000×32×32×3 uint8, "
               "'extrapolated_targets' 500000 labels)",
               note="Carmon et al.'s file; no checksum is published, so unverified and read with a "
                    "restricted unpickler (numpy arrays and plain containers only)"),
    ),
))

#: CIFAR-10-C's 15 benchmark corruptions (Hendrycks & Dietterich, ICLR 2019; the set of
#: RobustBench's ``CORRUPTIONS``), by family: noise, blur, weather, digital.
CIFAR10C_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise",
                        "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
                        "snow", "frost", "fog", "brightness",
                        "contrast", "elastic_transform", "pixelate", "jpeg_compression")
_add(DatasetInfo(
    # Test-only: each <corruption>.npy holds the 10000 CIFAR-10 test images at severities
    # 1..5 in blocks of 10000 (50000×32×32×3 uint8); read by bench.data.corruptions, not by
    # bench.data.load (the measure 'corruptions' reads it). n_test: images per severity.
    "cifar10c", 10, (3, 32, 32), 0, 10000, augment="none",
    obtain="https://zenodo.org/record/2535967 (CIFAR-10-C.tar, Hendrycks & Dietterich 2019) "
           "extracted into the data root",
    sources=(
        Source("cifar10c_npy", "CIFAR-10-C", None,
               "CIFAR-10-C/{labels," + ",".join(CIFAR10C_CORRUPTIONS) + "}.npy",
               note="the published .npy files; no per-file checksums are published, so unverified"),
    ),
))

_add(DatasetInfo(
    # ILSVRC2012 (Deng et al., 2009), bring-your-own: 1.28M training and 50000 validation images
    # (the validation set is the test set), streamed from the files with decode workers;
    # training crops RandomResizedCrop(224) + flip, test Resize(256) + CenterCrop(224) (HE App. C.2).
    "imagenet", 1000, (3, 224, 224), 1281167, 50000, augment="resized_crop_flip", loader="stream",
    obtain="register at https://image-net.org (no automatic download) and place torchvision's ImageNet files "
           "(ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar, ILSVRC2012_devkit_t12.tar.gz) in <data root>/imagenet, "
           "or an ImageFolder tree imagenet/{train,val}/<wnid>/*.JPEG",
    sources=(
        Source("imagenet_tv", "imagenet", None,
               "imagenet/{ILSVRC2012_img_train.tar,ILSVRC2012_img_val.tar,ILSVRC2012_devkit_t12.tar.gz} "
               "(or as torchvision.datasets.ImageNet extracts them: imagenet/{meta.bin,train/<wnid>,val/<wnid>})",
               note="torchvision's ImageNet layout: the archives' md5 is checked by torchvision when it extracts "
                    "them, not re-checked here"),
        Source("imagenet_folder", "imagenet", None, "imagenet/{train,val}/<wnid>/*.JPEG",
               note="an ImageFolder tree: unverified"),
    ),
))
_add(DatasetInfo(
    # ImageNet-C (Hendrycks & Dietterich, ICLR 2019), test-only: the 15 benchmark corruptions at
    # severities 1..5 of the 50000 validation images, 224×224 JPEGs in
    # <corruption>/<severity>/<wnid>/; read by the measure 'corruptions' (source imagenetc).
    "imagenetc", 1000, (3, 224, 224), 0, 50000, augment="none", loader="stream",
    obtain="https://zenodo.org/record/2235448 (blur.tar, digital.tar, noise.tar, weather.tar; Hendrycks & "
           "Dietterich 2019) extracted into <data root>/ImageNet-C",
    sources=(
        Source("imagenetc_folder", "ImageNet-C", None,
               "ImageNet-C/{" + ",".join(CIFAR10C_CORRUPTIONS) + "}/{1..5}/<wnid>/*.JPEG",
               note="the published JPEG folders; no per-file checksums are published, so unverified"),
    ),
))
