# Stanford Cars (196 classes): train (8,144) / test (8,041), torchvision's devkit layout (MAE-Lite read the
# same images from car_ims.tgz + cars_annos.mat; the split is the same). Root: data.root/stanford_cars/
# {devkit/cars_meta.mat,devkit/cars_train_annos.mat,cars_train/,cars_test/,cars_test_annos_withlabels.mat}.
_base_ = ["./_base_/fine_grained.py"]
model = dict(num_classes=196)
data = dict(dataset="cars")
